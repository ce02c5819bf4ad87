"""Applications on top of training and deploy: evaluation of any checkpoint or bundle, closed loop, rollouts, recording, quick start."""
