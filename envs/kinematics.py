"""Damped-least-squares inverse kinematics of a MuJoCo site, computed on a private scratch MjData."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mujoco
import numpy as np


@dataclass
class IKResult:
    qpos: np.ndarray  # solution for the solver's joints (radians / metres), inside the joint limits
    position_error: float  # metres, |target - site position| at the solution
    rotation_error: float  # radians (0 when no orientation target was given)
    converged: bool
    iterations: int


class SiteIK:
    """Solves joint positions that put a site at a target position (and optionally orientation).

    Only the listed hinge/slide joints move; every other coordinate keeps the value of the `qpos_full` passed in (or
    the model's qpos0). The model is never stepped: the solver owns a scratch MjData, so an expert can use it without
    touching the environment's state. Iterates
        dq = J^T (J J^T + lambda^2 I)^-1 e
    with e = [position error; rotation_weight * rotation error] and clamps to the joint limits after every step.
    A posture term (null-space pull towards `posture`) resolves redundancy, e.g. a 5-joint arm reaching a point.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        site: str,
        joints: Sequence[str],
        *,
        damping: float = 1e-2,
        rotation_weight: float = 0.15,
        max_step: float = 0.25,
    ) -> None:
        self.model = model
        self.site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        if self.site_id < 0:
            sites = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_SITE, i) for i in range(model.nsite)]
            raise ValueError(f"SiteIK: the model has no site {site!r}; sites: {sites}")
        qadr, dadr, lows, highs = [], [], [], []
        for name in joints:
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if jid < 0:
                raise ValueError(f"SiteIK: the model has no joint {name!r}")
            if int(model.jnt_type[jid]) not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                raise ValueError(f"SiteIK: joint {name!r} is not a hinge or slide joint")
            qadr.append(model.jnt_qposadr[jid])
            dadr.append(model.jnt_dofadr[jid])
            limited = bool(model.jnt_limited[jid])
            lows.append(model.jnt_range[jid, 0] if limited else -np.inf)
            highs.append(model.jnt_range[jid, 1] if limited else np.inf)
        self.joint_names = list(joints)
        self.qpos_index = np.array(qadr, dtype=int)
        self.dof_index = np.array(dadr, dtype=int)
        self.lower, self.upper = np.array(lows), np.array(highs)
        self.damping = float(damping)
        self.rotation_weight = float(rotation_weight)
        self.max_step = float(max_step)
        self.data = mujoco.MjData(model)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    # ------------------------------------------------------------------ forward kinematics
    def set_qpos(self, q: np.ndarray, qpos_full: np.ndarray | None = None) -> None:
        if qpos_full is not None:
            self.data.qpos[:] = qpos_full
        self.data.qpos[self.qpos_index] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def forward(self, q: np.ndarray, qpos_full: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Site position (3,) and rotation matrix (3, 3) for joint values `q`."""
        self.set_qpos(np.asarray(q, dtype=float), qpos_full)
        return self.data.site_xpos[self.site_id].copy(), self.data.site_xmat[self.site_id].reshape(3, 3).copy()

    # ------------------------------------------------------------------ inverse kinematics
    def solve(
        self,
        target_pos: np.ndarray,
        q_init: np.ndarray,
        *,
        target_mat: np.ndarray | None = None,
        posture: np.ndarray | None = None,
        posture_weight: float = 0.0,
        qpos_full: np.ndarray | None = None,
        max_iters: int = 100,
        pos_tol: float = 1e-4,
        rot_tol: float = 1e-3,
    ) -> IKResult:
        """Joint values moving the site to `target_pos` (and frame `target_mat`), starting from `q_init`."""
        target_pos = np.asarray(target_pos, dtype=float)
        if target_pos.shape != (3,) or not np.isfinite(target_pos).all():
            raise ValueError(f"SiteIK.solve: target_pos must be 3 finite numbers, got {target_pos!r}")
        q = np.asarray(q_init, dtype=float)
        if q.shape != self.qpos_index.shape:
            raise ValueError(f"SiteIK.solve: q_init has shape {q.shape}, expected {self.qpos_index.shape}")
        q = np.clip(q, self.lower, self.upper)
        if qpos_full is not None:
            self.data.qpos[:] = qpos_full
        n_rows = 3 if target_mat is None else 6
        reg = self.damping**2 * np.eye(n_rows)
        eye = np.eye(len(q))
        for it in range(max_iters + 1):
            error, jac, pos_err, rot_err = self._residual(q, target_pos, target_mat)
            if pos_err < pos_tol and rot_err < rot_tol:
                return IKResult(q, pos_err, rot_err, True, it)
            if it == max_iters:
                break
            gain = np.linalg.solve(jac @ jac.T + reg, np.column_stack([error, jac]))
            dq = jac.T @ gain[:, 0]
            if posture is not None and posture_weight > 0:
                # Null-space pull: the part of the posture correction that does not disturb the task.
                dq += posture_weight * (eye - jac.T @ gain[:, 1:]) @ (np.asarray(posture) - q)
            step = np.abs(dq).max()
            if step > self.max_step:
                dq *= self.max_step / step
            q = np.clip(q + dq, self.lower, self.upper)
        return IKResult(q, pos_err, rot_err, False, max_iters)

    def _residual(self, q, target_pos, target_mat):
        """Task error e, its Jacobian d e / d q, and the position / rotation error norms at q."""
        self.set_qpos(q)
        n_rows = 3 if target_mat is None else 6
        error = np.empty(n_rows)
        error[:3] = target_pos - self.data.site_xpos[self.site_id]
        mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
        jac = np.empty((n_rows, len(self.dof_index)))
        jac[:3] = self._jacp[:, self.dof_index]
        rot_err = 0.0
        if target_mat is not None:
            current = self.data.site_xmat[self.site_id].reshape(3, 3)
            # Half the sum of axis cross products: the small-angle rotation (world frame) taking current to target.
            rot = 0.5 * np.cross(current.T, np.asarray(target_mat).T).sum(axis=0)
            rot_err = float(np.linalg.norm(rot))
            error[3:] = self.rotation_weight * rot
            jac[3:] = self.rotation_weight * self._jacr[:, self.dof_index]
        return error, jac, float(np.linalg.norm(error[:3])), rot_err
