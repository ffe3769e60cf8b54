"""π0 and π0.5 (LeRobot ``PI0Policy``/``PI05Policy``) as PI-RL flow policies."""
