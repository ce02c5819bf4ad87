"""Applications above training and deploy: evaluation of any checkpoint or bundle, closed loop, rollouts, recording,
quick start."""
