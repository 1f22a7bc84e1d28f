"""What runs inside a training job: ``python -m sm_imgclf.runtime.job``.

This half of the package imports torch and torchvision but never boto3 or
sagemaker; it follows the SageMaker script-mode contract on a laptop and in
the SageMaker PyTorch container alike.
"""
