"""Models: backbone registry, weight loading, the ImageClassifier LightningModule, checkpoint loading.

Import from the submodules (``imgsearch.models.classifier`` ...): importing this package stays cheap.
"""
