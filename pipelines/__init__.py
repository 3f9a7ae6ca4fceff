"""The generation core of Diffusion Studio (no Qt)."""

from pipelines.offline import set_offline_environment

# huggingface_hub reads these once, when it is first imported: set them before any core module can
# import it, so a script or the CLI never waits on an unreachable hub.
set_offline_environment()
