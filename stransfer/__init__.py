"""stransfer: neural style transfer with Gatys, Johnson and AdaIN engines on one VGG backbone."""

__version__ = "0.1.0"
