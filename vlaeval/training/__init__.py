"""Training modules that feed agents (behaviour cloning, RL fine-tuning); trainers register
through the ``vlaeval_register_trainers`` hook."""
