"""Recipe -> artifacts: schema, source acquisition, ONNX preparation, calibration, RKNN build."""
