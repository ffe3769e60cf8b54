"""X-VLA's LIBERO embodiment: the facts the builder, the adapter and the demonstration schema share.

LeRobot names LIBERO's observations ``observation.images.image`` (agentview),
``observation.images.image2`` (eye-in-hand) and ``observation.state``; its
``LiberoProcessorStep`` turns the robot state into X-VLA's 20-dim proprio
``[eef_pos(3), rot6d(eef_mat)(6), 0, zeros(10)]``; ``lerobot/xvla-libero`` was trained as
embodiment (domain) 3 in the ``ee6d`` action space, of which LIBERO executes the first arm.
"""

from __future__ import annotations

IMAGE_KEYS: tuple[str, ...] = ("observation.images.image", "observation.images.image2")
STATE_KEY = "observation.state"
LIBERO_STATE_DIM = 20  # LeRobot's LiberoProcessorStep: [eef_pos(3), rot6d(6), 0, zeros(10)]
EE6D_ACTION_DIM = 20  # X-VLA ee6d: two arms x [xyz(3), rot6d(6), gripper logit(1)]
GRIPPER_CHANNEL = 9  # ee6d channel of the first arm's gripper (1 = close, 0 = open in demonstrations)
EXECUTED_ACTION_DIMS = 10  # ee6d channels the LIBERO env postprocessor reads (first arm)
ENV_ACTION_DIM = 7  # LIBERO: xyz, axis-angle, gripper
LIBERO_DOMAIN_ID = 3  # the embodiment id lerobot/xvla-libero was trained with
TOKENIZER_MAX_LENGTH = 24  # longest LIBERO instruction is 21 tokens incl. <s> </s>
