"""crust-clean's review operators for the FiftyOne App.

Each decision operator acts on the selected samples, or on the whole current view when nothing is
selected, and stores ``crust_decision`` (keep / drop / relabel), ``crust_new_label`` and
``crust_decided_at`` on them; ``crust-clean export manifest`` applies them. The logic lives in the
``crust_clean`` package (the same code the CLI runs); these classes are the App's shell around it.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from crust_clean.config import MANIFEST_FORMATS, MANIFEST_POLICIES
from crust_clean.review.fiftyone import SUSPECTS_VIEW, record_decision
from crust_clean.review.manifest import export_manifest


def _targets(ctx):
    """The selected samples, or the whole current view when nothing is selected."""
    return ctx.view.select(ctx.selected) if ctx.selected else ctx.view


def _describe_targets(ctx, inputs, verb: str) -> None:
    where = "selected samples" if ctx.selected else "samples in the current view (nothing is selected)"
    inputs.view("targets", types.Notice(label=f"{verb} {len(_targets(ctx))} {where}"))


class _Decision(foo.Operator):
    decision = ""
    verb = ""

    def resolve_input(self, ctx):
        inputs = types.Object()
        _describe_targets(ctx, inputs, self.verb)
        return types.Property(inputs)

    def execute(self, ctx):
        marked = record_decision(_targets(ctx), self.decision)
        ctx.ops.reload_dataset()
        return {"marked": marked, "decision": self.decision}


class MarkMislabeled(_Decision):
    decision, verb = "drop", "Mark as mislabeled (drop)"

    @property
    def config(self):
        return foo.OperatorConfig(name="mark_mislabeled", label="crust-clean: mark as mislabeled (drop)",
                                  dynamic=True)


class MarkCorrect(_Decision):
    decision, verb = "keep", "Mark as correct (keep)"

    @property
    def config(self):
        return foo.OperatorConfig(name="mark_correct", label="crust-clean: mark as correct (keep)", dynamic=True)


class Relabel(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="relabel", label="crust-clean: relabel", dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        _describe_targets(ctx, inputs, "Relabel")
        label_field = ctx.dataset.info.get("crust_label_field", "ground_truth")
        classes = ctx.dataset.distinct(f"{label_field}.label")
        choices = types.Dropdown()
        for name in classes:
            choices.add_choice(name, label=name)
        inputs.enum("new_label", classes, required=True, label="New label", view=choices)
        return types.Property(inputs)

    def execute(self, ctx):
        marked = record_decision(_targets(ctx), "relabel", ctx.params["new_label"])
        ctx.ops.reload_dataset()
        return {"marked": marked, "decision": "relabel", "new_label": ctx.params["new_label"]}


class ShowSuspects(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="show_suspects", label="crust-clean: show suspects")

    def execute(self, ctx):
        ctx.ops.set_view(name=SUSPECTS_VIEW)
        return {"view": SUSPECTS_VIEW}


class ExportCleanedManifest(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="export_cleaned_manifest", label="crust-clean: export cleaned manifest")

    def resolve_input(self, ctx):
        inputs = types.Object()
        run = ctx.dataset.info.get("crust_run")
        if not run:
            inputs.view("missing", types.Error(label="This dataset holds no crust-clean export"))
            return types.Property(inputs)
        inputs.enum("policy", list(MANIFEST_POLICIES), default="reviewed", label="Policy",
                    description="reviewed: apply the decisions made here; auto: drop / relabel the suspects")
        inputs.enum("format", list(MANIFEST_FORMATS), default="csv", label="Format")
        inputs.str("out", default=f"{run}/cleaned", required=True, label="Output folder")
        inputs.bool("overwrite", default=False, label="Replace an existing output folder")
        return types.Property(inputs)

    def execute(self, ctx):
        written = export_manifest(
            ctx.dataset.info["crust_run"], ctx.params["out"], policy=ctx.params.get("policy", "reviewed"),
            fmt=ctx.params.get("format", "csv"), from_fiftyone=ctx.dataset.name,
            overwrite=ctx.params.get("overwrite", False),
        )
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
    for operator in (MarkMislabeled, Relabel, MarkCorrect, ShowSuspects, ExportCleanedManifest):
        plugin.register(operator)
