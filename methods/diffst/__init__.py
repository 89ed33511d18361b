"""The cross-modal conditional diffusion model (diffst)."""
