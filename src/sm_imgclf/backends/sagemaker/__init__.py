"""The SageMaker backend: requests built by pure functions, sent through boto3."""
