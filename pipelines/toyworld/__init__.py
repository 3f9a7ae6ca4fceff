"""The bundled "toy world" model: a seeded world generator, training, export and evaluation.

``python -m pipelines.toyworld.train`` trains (resumable) and exports into ``resources/models``;
``python -m pipelines.toyworld.evaluate`` measures how well prompts and ControlNets steer the image.
"""
