"""The studio's widgets; each panel edits part of a GenerationRequest and can be filled from one."""
