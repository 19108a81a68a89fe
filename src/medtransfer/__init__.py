"""medtransfer: which pretraining makes a good medical image segmenter?"""
__version__ = "0.1.0"
