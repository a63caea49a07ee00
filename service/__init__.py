"""ZooServe's server: the models of a store on onnxruntime, over HTTP (Open Inference Protocol).

Importing this package does nothing: `service.rest.app.create_app(settings)` builds the app, and
`python -m service` runs it. The service never imports torch or `export/`.
"""

__version__ = "0.1.0"
