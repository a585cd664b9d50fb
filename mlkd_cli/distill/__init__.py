"""Multi-teacher, layer-wise knowledge distillation: losses, teachers and their targets, the stage."""
