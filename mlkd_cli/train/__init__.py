"""One training loop for teachers, distillation and fine-tuning; the objective is passed in."""
