"""The local sandbox: the real state machine on moto, with a simulated ECS."""
