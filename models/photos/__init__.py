"""The photos domain: everyday photographs, labelled with the ImageNet-1k classes."""
