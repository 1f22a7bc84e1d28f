"""The model registry: torchvision classifiers by name, with a head for your classes."""
