"""The generation core of Diffusion Studio (no Qt)."""

from pipelines.cpu import apply_environment
from pipelines.offline import set_offline_environment

# huggingface_hub reads these once, when it is first imported: set them before any core module can
# import it, so a script or the CLI never waits on an unreachable hub. OpenMP likewise reads its
# waiting policy once, when torch loads.
set_offline_environment()
apply_environment()
