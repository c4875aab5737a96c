"""Trainers that break the extension contract, for the tests that show it is refused: one
that re-implements the update (and so would skip the regularizers and the amp scaler), one
whose forward pass never hands the regularizers' hooks to its towers."""
from trainers.coop import CoOp
from trainers.models import ForwardHooks


class StepOverridingCoOp(CoOp):
    def backward_and_update(self, loss, step, reg_loss):
        self.model_zero_grad()
        step.total().backward()  # drops the regularizers' gradient and the amp scaler
        self.model_update()


class HookIgnoringCoOp(CoOp):
    """A learner whose forward pass never hands the regularizers' hooks to the text tower."""

    def step_loss(self, images, labels, hooks):
        return super().step_loss(images, labels, ForwardHooks())


def register_for_test(monkeypatch, cls):
    """Register ``cls`` in the trainer registry until ``monkeypatch`` is undone."""
    from dassl_compat import TRAINER_REGISTRY

    monkeypatch.setitem(TRAINER_REGISTRY._obj_map, cls.__name__, cls)
