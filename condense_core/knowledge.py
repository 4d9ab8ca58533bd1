"""Knowledge a reduced set can carry besides its hard labels: soft targets, and the losses that use them.

Soft targets are a model's logits on the set's training images (`reduced.SoftTargets`). Two
losses read them:
- `distillation_loss`, for a network trained on the set (evaluation, a memory-only model, a NAS
  candidate): cross-entropy on the labels plus T^2 x KL(teacher || student) at the targets'
  temperature T (Hinton et al. 2015; the soft labels of dataset distillation: SRe2L, RDED).
- `dark_replay_loss`, for memory items replayed inside training (DER++, Buzzega et al., NeurIPS
  2020): `alpha` x the mean squared error to the recorded logits plus `beta` x the cross-entropy
  on the stored labels.
`recorded_logits` records a network's logits on a set (a continual learner's, or the teacher of
`evaluate.teacher_targets`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F



def soft_target_term(output: torch.Tensor, target_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 KL(softmax(target/T) || softmax(output/T)), averaged over the batch (T^2 keeps its
    gradient's scale independent of T)."""
    t = float(temperature)
    teacher = F.log_softmax(target_logits / t, dim=1)
    student = F.log_softmax(output / t, dim=1)
    return t * t * F.kl_div(student, teacher, reduction="batchmean", log_target=True)


def distillation_loss(output: torch.Tensor, labels: torch.Tensor, target_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """CE(output, labels) + `soft_target_term` at the targets' temperature."""
    return F.cross_entropy(output, labels) + soft_target_term(output, target_logits, temperature)


def dark_replay_loss(output: torch.Tensor, labels: torch.Tensor, target_logits: torch.Tensor, alpha: float,
                     beta: float) -> torch.Tensor:
    """DER++'s memory term: alpha x MSE(output, recorded logits) + beta x CE(output, labels)."""
    return alpha * F.mse_loss(output, target_logits) + beta * F.cross_entropy(output, labels)


@torch.no_grad()
def recorded_logits(network: torch.nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """`network`'s logits on `images` (on the network's device, in eval mode; its mode is restored),
    on the CPU."""
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    try:
        return torch.cat([network(images[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(images), batch_size)])
    finally:
        network.train(was_training)
