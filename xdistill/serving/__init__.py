"""Serving a distilled student: loading it for inference (:mod:`~xdistill.serving.inference`, PyTorch or ONNX
Runtime), ONNX export and int8 quantization (:mod:`~xdistill.serving.onnx`, :mod:`~xdistill.serving.export`),
and the latency benchmark (:mod:`~xdistill.serving.benchmark`). Nothing here imports training code
(the import contract in ``pyproject.toml`` checks it)."""
