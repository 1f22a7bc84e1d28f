"""The runtime: what ships into containers and runs there.

``runtime.job`` is the training program (script mode on SageMaker, a
subprocess locally); ``runtime.serving`` is the inference handler, the
endpoint server and its batcher; ``runtime.checks`` is the recorder, profiler
and rules that run inside every job; ``runtime.models``, ``runtime.images`` and
``runtime.package`` are shared by training and serving. Nothing here imports
boto3, the backends, the session or the public handles.
"""
