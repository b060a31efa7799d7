"""crust-clean's review operators for the FiftyOne App.

The queue is the saved view ``to review`` (suspects without a decision, highest score first). A decision
operator acts on the selected samples; with nothing selected it acts on the whole current view only when its
form's "apply to all N samples in the view" box is ticked, and refuses otherwise. It stores the decision
(``crust_decision``, ``crust_new_label``, ``crust_decided_at``, ...) and the tag ``crust:decided:<decision>``,
clears the selection, reloads (decided samples leave ``to review``) and reports "N decided, M left".
``crust-clean export manifest`` applies the decisions. The logic lives in the ``crust_clean`` package (the same
code the CLI runs); these classes are the App's shell around it.
"""

from collections import Counter

import fiftyone.operators as foo
import fiftyone.operators.types as types

from crust_clean.config import MANIFEST_FORMATS, MANIFEST_POLICIES
from crust_clean.errors import CrustCleanError
from crust_clean.review.decision_store import (
    TO_REVIEW_VIEW,
    clear_decisions,
    keep_one_per_group,
    queue_counts,
    record_decision,
)
from crust_clean.review.manifest import export_manifest, output_taken

APPLY_TO_ALL = "apply_to_all"
_OVERWRITE_LABEL = "Replace an existing output folder"


def _samples(n: int) -> str:
    return f"{n} sample" if n == 1 else f"{n} samples"


def _apply_to_all_label(ctx) -> str:
    return f"apply to all {_samples(len(ctx.view))} in the view"


def _targets(ctx):
    """The selected samples; with none selected, the whole view if its box is ticked, else None."""
    if ctx.selected:
        return ctx.view.select(ctx.selected)
    return ctx.view if ctx.params.get(APPLY_TO_ALL) else None


def _target_inputs(ctx, inputs, verb: str) -> None:
    """Say what the operator will act on; with nothing selected, the box that must be ticked to act on the view."""
    if ctx.selected:
        inputs.view("targets", types.Notice(label=f"{verb} {_samples(len(ctx.selected))} (selected)"))
        return
    ticked = bool(ctx.params.get(APPLY_TO_ALL))
    inputs.bool(APPLY_TO_ALL, default=False, label=_apply_to_all_label(ctx), view=types.CheckboxView(),
                description="Nothing is selected. Select samples in the grid, or tick this to act on every "
                            "sample of the current view.",
                invalid=not ticked, error_message=f"Nothing is selected: select samples, or tick "
                                                  f"'{_apply_to_all_label(ctx)}'")


def _after_deciding(ctx, marked: int, decision: str) -> dict:
    """Clear the selection, show the queue without the decided samples, and report its progress."""
    decided, left = queue_counts(ctx.dataset)
    message = f"{_samples(marked)} marked {decision}: {decided} decided, {left} left to review"
    ctx.ops.clear_selected_samples()
    ctx.ops.reload_dataset()
    ctx.ops.notify(message, variant="success")
    return {"marked": marked, "decision": decision, "decided": decided, "left": left, "message": message}


class _Decision(foo.Operator):
    """An operator that changes decisions: the form names its targets, ``execute`` refuses without any and
    ``act`` does the change, returning (samples changed, what was done)."""

    verb = ""

    def resolve_input(self, ctx):
        inputs = types.Object()
        _target_inputs(ctx, inputs, self.verb)
        self.more_inputs(ctx, inputs)
        return types.Property(inputs)

    def more_inputs(self, ctx, inputs) -> None:
        pass

    def execute(self, ctx):
        targets = _targets(ctx)
        if targets is None:
            raise ValueError(f"Nothing is selected: select samples, or tick '{_apply_to_all_label(ctx)}'")
        return _after_deciding(ctx, *self.act(ctx, targets))

    def act(self, ctx, targets) -> tuple[int, str]:
        raise NotImplementedError


class MarkMislabeled(_Decision):
    verb = "Mark as mislabeled (drop)"

    @property
    def config(self):
        return foo.OperatorConfig(name="mark_mislabeled", label="crust-clean: mark as mislabeled (drop)",
                                  dynamic=True)

    def act(self, ctx, targets):
        return record_decision(targets, "drop"), "drop"


class MarkCorrect(_Decision):
    verb = "Mark as correct (keep)"

    @property
    def config(self):
        return foo.OperatorConfig(name="mark_correct", label="crust-clean: mark as correct (keep)", dynamic=True)

    def act(self, ctx, targets):
        return record_decision(targets, "keep"), "keep"


class ClearDecision(_Decision):
    verb = "Clear the decision of"

    @property
    def config(self):
        return foo.OperatorConfig(name="clear_decision", label="crust-clean: clear decision (back to the queue)",
                                  dynamic=True)

    def act(self, ctx, targets):
        return clear_decisions(targets), "undecided"


class Relabel(_Decision):
    verb = "Relabel"

    @property
    def config(self):
        return foo.OperatorConfig(name="relabel", label="crust-clean: relabel", dynamic=True)

    def more_inputs(self, ctx, inputs):
        label_field = ctx.dataset.info.get("crust_label_field", "given_label")
        classes = ctx.dataset.info.get("crust_classes") or ctx.dataset.distinct(f"{label_field}.label")
        choices = types.Dropdown()
        for name in classes:
            choices.add_choice(name, label=name)
        targets = _targets(ctx)
        suggested = Counter(targets.values("crust_prediction.label")).most_common(1) if targets is not None else []
        inputs.enum("new_label", classes, required=True, label="New label", view=choices,
                    default=suggested[0][0] if suggested else None,
                    description="pre-filled with the model's prediction (the most common one for several samples)")

    def act(self, ctx, targets):
        new_label = ctx.params["new_label"]
        return record_decision(targets, "relabel", new_label), f"relabel to {new_label}"


class KeepOnePerGroup(foo.Operator):
    """Near-duplicates: the selected samples are kept, the other members of their groups dropped."""

    @property
    def config(self):
        return foo.OperatorConfig(name="keep_one_per_group",
                                  label="crust-clean: keep the selected, drop the rest of their near-duplicate groups",
                                  dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        if ctx.selected:
            groups = len(set(ctx.view.select(ctx.selected).values("crust_duplicate_group")) - {None})
            inputs.view("targets", types.Notice(
                label=f"Keep {_samples(len(ctx.selected))} (selected) and drop the other members of their {groups} "
                      "near-duplicate groups (members decided earlier keep their decision)"))
        else:
            inputs.view("missing", types.Error(label="Select the sample to keep in each near-duplicate group "
                                                     "(the 'near-duplicates' view shows them group by group)"))
        return types.Property(inputs)

    def execute(self, ctx):
        if not ctx.selected:
            raise ValueError("Nothing is selected: select the sample to keep in each near-duplicate group")
        try:
            kept, dropped = keep_one_per_group(ctx.view.select(ctx.selected))
        except CrustCleanError as err:
            raise ValueError(str(err)) from None
        result = _after_deciding(ctx, kept + dropped, "keep one per group")
        return {**result, "kept": kept, "dropped": dropped}


class ShowToReview(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="show_to_review", label="crust-clean: show what is left to review")

    def execute(self, ctx):
        ctx.ops.set_view(name=TO_REVIEW_VIEW)
        decided, left = queue_counts(ctx.dataset)
        ctx.ops.notify(f"{decided} decided, {left} left to review")
        return {"view": TO_REVIEW_VIEW, "decided": decided, "left": left}


class ExportCleanedManifest(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="export_cleaned_manifest", label="crust-clean: export cleaned manifest",
                                  dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        run = ctx.dataset.info.get("crust_run")
        if not run:
            inputs.view("missing", types.Error(label="This dataset holds no crust-clean export"))
            return types.Property(inputs)
        inputs.enum("policy", list(MANIFEST_POLICIES), default="reviewed", label="Policy",
                    description="reviewed: apply the decisions made here; auto: drop / relabel the suspects")
        inputs.enum("format", list(MANIFEST_FORMATS), default="csv", label="Format")
        out = ctx.params.get("out") or f"{run}/cleaned"
        taken = output_taken(out) and not ctx.params.get("overwrite")
        inputs.str("out", default=f"{run}/cleaned", required=True, label="Output folder", invalid=taken,
                   error_message=f"{out} already exists and is not empty: tick '{_OVERWRITE_LABEL}' or choose "
                                 "another output folder")
        inputs.bool("overwrite", default=False, label=_OVERWRITE_LABEL)
        return types.Property(inputs)

    def execute(self, ctx):
        out = ctx.params["out"]
        if output_taken(out) and not ctx.params.get("overwrite"):
            raise ValueError(f"{out} already exists and is not empty: tick '{_OVERWRITE_LABEL}' or choose another "
                             "output folder")
        try:
            written = export_manifest(
                ctx.dataset.info["crust_run"], out, policy=ctx.params.get("policy", "reviewed"),
                fmt=ctx.params.get("format", "csv"), from_fiftyone=ctx.dataset.name,
                overwrite=ctx.params.get("overwrite", False),
            )
        except CrustCleanError as err:
            raise ValueError(str(err)) from None  # the message alone: no traceback in the App
        return {"out": str(written.out), "dataset": str(written.dataset), "kept": written.kept,
                "dropped": written.dropped, "relabeled": written.relabeled,
                "unreviewed_suspects": written.unreviewed_suspects}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("dataset", label="Cleaned dataset written to")
        for name in ("kept", "dropped", "relabeled", "unreviewed_suspects"):
            outputs.int(name, label=name.replace("_", " "))
        return types.Property(outputs)


def register(plugin):
    for operator in (MarkMislabeled, Relabel, MarkCorrect, ClearDecision, KeepOnePerGroup, ShowToReview,
                     ExportCleanedManifest):
        plugin.register(operator)
