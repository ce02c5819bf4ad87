"""MuJoCo robot tasks as Gymnasium environments; importing this package registers them as `cerebellum/<Task>-v0`."""

from envs.registration import register_all

register_all()
