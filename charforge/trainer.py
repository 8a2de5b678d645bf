"""The training loop: truncated BPTT over parallel streams, with a plugin hook at each event.

Read top to bottom: ``__init__`` builds data, model and optimizer (or restores them from a
checkpoint), ``run`` loops over windows until the budget is spent, ``validate_and_save`` and
``save`` do what they say. Nothing here prints: the console output is a plugin like any other.
:class:`Trainer` runs past 200 lines, and this module past 400 lines, on purpose: the loop, its
bookkeeping and its checkpoints stay in one class so that the whole of training reads in one
sitting. What is not the loop's lives elsewhere: building the optimizer in :mod:`charforge.optim`,
evaluation in :mod:`charforge.evaluation`, the resume rules in :mod:`charforge.resume`, starting
from another run's weights in :mod:`charforge.finetune`, what several processes must agree on in
:mod:`charforge.distributed`, signals and the divergence rule in :mod:`charforge.stopping`, and the
tensor layout of a checkpoint in :mod:`charforge.runs.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from charforge.cadence import Cadence
from charforge.config import TrainConfig
from charforge.data import training_data
from charforge.device import pick_device
from charforge.distributed import World
from charforge.evaluation import evaluate
from charforge.errors import CharforgeError, warn
from charforge.finetune import initialise, starting_point
from charforge.model import build_model, detach_state
from charforge.optim import Schedule, build_optimizer, clip_gradients
from charforge.plugins import Registry, make_plugin_manager
from charforge.resume import resumed_config, same_text
from charforge.runs.checkpoint import (Checkpoint, check_fits, load_checkpoint, require_plugins, restore_carry,
                                       restore_model, restore_optimizer, restore_rng, save_checkpoint,
                                       training_state)
from charforge.runs.directory import Run, step_kind
from charforge.runs.validation import first_nonfinite
from charforge.runview import RunView
from charforge.sampling.engine import BatchGenerator
from charforge.sampling.settings import Request, Settings
from charforge.stopping import catch_signals, divergence_message, diverged
from charforge.tasks.task import IGNORE
from charforge.threads import ThreadTuner, usable_cores

LN2 = math.log(2)
VAL_SHARE = 0.03  # of the time between two validations that a periodic validation may take


class TrainingDiverged(CharforgeError):
    pass


class PluginFailed(CharforgeError):
    """A plugin's lifecycle hook raised: one line naming the plugin, the hook and the error."""

    def __init__(self, plugin: str, hook: str, error: Exception):
        super().__init__(f"plugin {plugin!r} failed in {hook}: {type(error).__name__}: {error}")
        self.plugin, self.hook = plugin, hook


class Trainer:
    """Trains one run. Plugins see it through :attr:`view` (a :class:`RunView`), handed to every
    lifecycle hook; ``request_stop`` ends training after the step."""

    def __init__(self, config: TrainConfig, pm=None, runs_root: str | Path = "runs", name: str | None = None,
                 checkpoint: Checkpoint | None = None, writer: bool = True, directory: Run | None = None):
        """``writer``: whether this process owns the run directory (only one of several training one
        run does); the others train alike but write nothing. ``directory``: the run ``checkpoint``
        belongs to, already locked (:meth:`resume` locks it before reading the checkpoint)."""
        self.pm = pm if pm is not None else make_plugin_manager()
        self.view = RunView(self)
        self.registry = Registry(self.pm)
        if checkpoint is not None:  # a resume names the plugin it needs, before anything else fails
            require_plugins(checkpoint, self.registry)
        config = dataclasses.replace(config.check())  # the caller's config stays as it was given
        if config.steps is None and config.epochs is None and config.minutes is None:
            config.minutes = TrainConfig.DEFAULT_MINUTES
        self.config = config
        self.world = World.current()  # one process, or one rank of several (charforge.distributed)
        writer = writer and self.world.writer
        self.device = pick_device(config.device)
        self.tuner = ThreadTuner.for_device(self.device, config.threads or (
            self.world.threads(usable_cores()) if self.world.size > 1 else 0))  # ranks keep in step: pinned

        base = None  # the checkpoint a fine-tuning run starts from
        if checkpoint is None and config.init_from is not None:
            base = starting_point(config.init_from, self.registry)
        # a fine-tuned run's text is encoded in its model's vocabulary, extended by what that lacks
        vocab = base.vocab if base is not None else None
        if checkpoint is not None and config.init_from is not None:
            vocab = checkpoint.vocab
        source = training_data(config, self.registry, self.device, vocab)
        self.vocab, self.task, self.fingerprint = source.vocab, source.task, source.fingerprint
        if checkpoint is not None:
            same_text(checkpoint, self.vocab, self.fingerprint, config.corpus)
        self.train_data, self.val_data = self.world.streams(source.train, source.val, source.task)
        # held-out streams too few to share are read whole by every rank, each getting the same figures
        self._val_sum = self.world.sum if self.val_data is not source.val else None

        for stored in (checkpoint, base):  # sizes the file does not hold never reach memory
            if stored is not None:
                check_fits(stored, self.registry, source.input_size)
        torch.manual_seed(config.seed)
        self.model = build_model(config, len(self.vocab), self.registry, source.input_size).to(self.device)
        if base is not None:
            initialise(self.model, base, config)
        self.optimizer = build_optimizer(config, self.model, self.registry)
        self.provenance = {role: self.registry.get(role, getattr(config, role)).provenance()
                           for role in ("cell", "optimizer")}
        self.schedule = Schedule(config.schedule, config.warmup, config.lr_decay, config.lr_decay_every,
                                 config.min_lr_ratio)

        self.step = self.epoch = self.window = 0
        self.elapsed = 0.0  # seconds of training, summed over resumes
        self.best_val = math.inf
        self.last_metrics: dict = {}
        self.ddp = self.world.wrap(self.model)  # what training calls: the model, or DDP around it
        self.state = self.model.initial_state(self.train_data.batch, self.device)
        self._stop: str | None = None
        self._signalled = False  # a Ctrl-C or SIGTERM came: the step under way is the last
        self.outcome: str | None = None  # why the last run() ended: "budget spent", "interrupted"...
        self.phase, self.validation_fraction = "training", 0.0  # what the run does now, for progress displays
        self._final = False  # the validation under way reads all the held-out text
        self.val_windows: int | None = None  # the fixed sample of held-out windows periodic validation reads
        self._window_seconds: float | None = None  # the last measured cost of one held-out window
        budget = config.minutes * 60 if config.minutes else None
        self.evals = Cadence(config.eval_every, config.eval_seconds, budget)
        self.saves = Cadence(config.checkpoint_every, config.checkpoint_seconds, budget)
        if checkpoint is not None:
            self.directory = directory or Run.of(checkpoint.path, writer)
            self.directory.acquire()
            self._restore(checkpoint)
        elif writer:
            self.directory = Run.create(runs_root, name or f"{source.name}-{config.cell}", name is not None,
                                        config.to_dict(), self.vocab.to_json())
        else:
            self.directory = Run(Path(runs_root) / (name or f"{source.name}-{config.cell}"), writer=False)
        if checkpoint is None and self.world.size > 1:  # the run rank 0 created, named -2 or so if taken
            path = self.world.broadcast_text(str(self.directory.path))
            if not writer:
                self.directory = Run(path, writer=False)
        self.run_dir = self.directory.path
        try:
            self.metrics = self.directory.metrics_log()
        except OSError as exc:
            self.directory.release()
            raise CharforgeError(f"cannot write {self.directory.metrics_path}: {exc.strerror or exc}.") from None
        self._elapsed0, self._progress0 = self.elapsed, self.progress()  # where this process begins
        self._clock = (time.perf_counter(), self.elapsed)

    @classmethod
    def resume(cls, target: str | Path, overrides: dict, pm=None, more: bool = False) -> "Trainer":
        """Continue a run from its latest checkpoint; ``overrides`` may change the budget, lr and such
        (``more``: a budget given counts from where the run stands, not from its start)."""
        run = Run.of(target, writer=World.current().writer)
        if run.path.is_dir():  # first: a run another process trains gets its holder's line, and no stale step
            run.acquire()
        try:
            if Path(target).is_dir() and run.is_run() and not run.checkpoint("latest").is_file():
                raise CharforgeError(f"{target} holds no checkpoint yet: it stopped before its first one, so there "
                                     f"is nothing to resume; start a new run.")
            ckpt = load_checkpoint(target, which="latest")
            pm = pm if pm is not None else make_plugin_manager()
            registry = Registry(pm)
            require_plugins(ckpt, registry)  # before the overrides are parsed with the checkpoint's plugins
            trainer = cls(resumed_config(ckpt.config, overrides, registry), pm=pm, checkpoint=ckpt, directory=run)
            if more:
                trainer._count_budget_from_here({k: overrides[k] for k in ("steps", "epochs", "minutes")
                                                 if overrides.get(k) is not None})
        except BaseException:
            run.release()
            raise
        return trainer

    def _count_budget_from_here(self, given: dict) -> None:
        """Turn the budgets ``given`` into the whole run's: that much more than what is spent."""
        c, done = self.config, {"steps": self.step, "epochs": self.step / self.train_data.windows,
                                "minutes": self.elapsed / 60}
        for key, value in given.items():
            setattr(c, key, type(value)(done[key] + value))
        self.evals.budget_seconds = self.saves.budget_seconds = c.minutes * 60 if c.minutes else None
        self._progress0 = self.progress()

    # -- the loop ---------------------------------------------------------------------------

    def progress(self) -> float:
        """The fraction of the budget spent: the largest of steps, epochs and minutes."""
        c = self.config
        parts = [0.0]
        if c.steps:
            parts.append(self.step / c.steps)
        if c.epochs:
            parts.append(self.step / (c.epochs * self.train_data.windows))
        if c.minutes:
            parts.append(self.elapsed / (c.minutes * 60))
        return max(parts)

    def final_validation_seconds(self) -> float:
        """What validating all the held-out text at the end is expected to cost (0 before it was measured)."""
        if self.val_data is None or self._window_seconds is None:
            return 0.0
        return self._window_seconds * self.val_data.windows

    def eta(self) -> float | None:
        """Seconds left, the final validation included; None until the run's rate is known."""
        final = self.final_validation_seconds()
        if self.phase == "validating" and self._final:
            return (1 - self.validation_fraction) * final
        spent, done = self.elapsed - self._elapsed0, self.progress() - self._progress0
        if spent <= 0 or done <= 0:
            return None
        left = max(1 - self.progress(), 0) * spent / done
        if self.config.minutes:
            left = min(left, max(self.config.minutes * 60 - self.elapsed - final, 0))
        return left + final

    def _tick(self) -> float:
        """Bring ``elapsed`` (training time, summed over resumes, validation included) up to now."""
        now = time.perf_counter()
        started, elapsed_before = self._clock
        self.elapsed = elapsed_before + now - started
        return now

    def _out_of_budget(self) -> bool:
        """The budget is spent, a minutes budget counting the final validation it must leave room for."""
        c = self.config
        return self.progress() >= 1 or bool(c.minutes and self.elapsed + self.final_validation_seconds()
                                            >= c.minutes * 60)

    def request_stop(self, reason: str = "stopped by a plugin") -> None:
        self._stop = reason

    def _hook(self, name: str, **kwargs) -> None:
        """Call lifecycle hook ``name`` with the run's view: the one place plugins are called from, so
        that an exception one raises becomes :class:`PluginFailed`, naming it."""
        try:
            getattr(self.pm.hook, name)(run=self.view, **kwargs)
        except Exception as error:
            plugin = self.pm.culprit(name, error)
            if plugin is None:
                raise
            raise PluginFailed(plugin, name, error) from error

    def run(self) -> dict:
        """Train until the budget is spent or a stop is requested; returns the last metrics. The run is
        closed when it returns, however it ends."""
        try:
            return self._run()
        finally:
            self.close()

    def close(self) -> None:
        """Close the metrics log and give up the run's lock (held from construction): another process
        may train the run from here on. ``run`` closes the trainer itself."""
        self.metrics.close()
        self.directory.release()
        self.ddp = self.model  # DDP's exchange threads end with it, before the process group does

    def _run(self) -> dict:
        c, model = self.config, self.model
        self.metrics.write("start", step=self.step, config=c.to_dict(), vocab_size=len(self.vocab),
                           world_size=self.world.size,
                           parameters=sum(p.numel() for p in model.parameters()),
                           windows_per_epoch=self.train_data.windows, run_dir=str(self.run_dir))
        self._hook("on_train_start")
        restore_signals = catch_signals(self._interrupted)
        threads = torch.get_num_threads()  # given back at the end: the tuner's count is this run's alone
        try:
            reason = self._loop()
        except BaseException as error:
            try:  # a full disk must not hide the error that stopped training
                self.metrics.write("error", step=self.step, message=str(error) or type(error).__name__)
            except OSError:
                pass
            # saving takes every rank: a run of several processes keeps its last checkpoint instead
            if isinstance(error, PluginFailed) and error.hook != "on_checkpoint_save" and self.world.size == 1:
                self._save_after(error)
            try:
                self._hook("on_train_error", error=error)
            except PluginFailed as failed:  # must not hide the error that stopped training
                warn(str(failed))
            self.world.raise_if_lost(error)  # DDP's own exchange (backward) found a rank gone
            raise
        finally:
            restore_signals()
            torch.set_num_threads(threads)
        self.outcome = reason
        self.metrics.write("end", reason=reason, **{**self.last_metrics, "step": self.step, "elapsed": self.elapsed})
        self._hook("on_train_end", reason=reason, metrics=self.last_metrics)
        return self.last_metrics

    def _loop(self) -> str:
        c, model = self.config, self.model
        data, vocab_size = self.train_data, len(self.vocab)
        model.train()
        started, elapsed_before = time.perf_counter(), self.elapsed
        self._clock = (started, elapsed_before)
        loss_sum, norm_sum, logged_at, logged_time = 0.0, 0.0, self.step, started
        if self.progress() >= 1:
            return "budget already spent"
        self.tuner.start()
        while self._stop is None:
            if self.window == data.windows:  # a new epoch starts every stream from its beginning
                self.epoch, self.window = self.epoch + 1, 0
                self.state = model.initial_state(data.batch, self.device)
            elif not data.carries_state:  # a task's independent sequences: each batch starts afresh
                self.state = model.initial_state(data.batch, self.device)
            step_started = time.perf_counter()
            x, y, t = data.window(self.window, model.uses_time)
            lr = c.lr * self.schedule.factor(self.step, self.progress())
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            logits, state = self.ddp(x, self.state, t)
            loss = F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = clip_gradients(model.parameters(), c.clip, c.clip_value)
            self.optimizer.step()
            self.state = detach_state(state)
            self.step, self.window = self.step + 1, self.window + 1
            now = self._tick()
            self.tuner.record(data.chars_per_window, now - step_started)
            loss_sum, norm_sum = loss_sum + loss.detach(), norm_sum + norm.detach()

            done, stopping = self.world.any(self._out_of_budget(), self._stop is not None or self._signalled)
            if stopping and self._stop is None:  # interrupted (here, or on another rank): all stop at this step
                self._stop = "interrupted"
            if self.step % c.log_every == 0 or done or self._stop:
                n = self.step - logged_at
                mean = self._mean(loss_sum, n)
                self._check_loss("training", mean)
                scored = y != IGNORE
                right = ((logits.detach().argmax(-1) == y) & scored).sum()
                hits = self.world.sum(torch.stack([right, scored.sum()]))  # over every rank's streams
                accuracy = float(hits[0] / hits[1])
                self.last_metrics = {
                    "step": self.step, "epoch": self.epoch + self.window / data.windows,
                    "loss": mean, "bpc": mean / LN2, "accuracy": accuracy, "lr": lr,
                    "grad_norm": float(norm_sum) / n,
                    "chars_per_s": n * data.chars_per_window * self.world.size / max(now - logged_time, 1e-9),
                    "elapsed": self.elapsed, "progress": min(self.progress(), 1.0),
                    "threads": self.tuner.threads, "eta": self.eta()}
                self.metrics.write("step", **self.last_metrics)
                self._hook("on_step_end", step=self.step, metrics=self.last_metrics)
                loss_sum, norm_sum, logged_at, logged_time = 0.0, 0.0, self.step, time.perf_counter()
            at = (self.step, self.elapsed, self.progress(), elapsed_before)
            validating, saving = self.world.any(done or self._stop or self.evals.due(*at), self.saves.due(*at))
            saving = saving and not validating
            if (validating or saving) and self.step > logged_at:  # no checkpoint from an unchecked loss
                self._check_loss("training", self._mean(loss_sum, self.step - logged_at))
            if validating:
                self.validate_and_save(final=done or self._stop is not None)
                model.train()
            elif saving:
                self.save("latest")
                self.saves.done(self.elapsed)
            if done and self._stop is None:
                self._stop = "budget spent"
        return self._stop

    # -- validation and checkpoints -----------------------------------------------------------

    def validate_and_save(self, final: bool = False) -> None:
        """Validate (on the fixed sample of held-out windows, or on all of them when ``final``), sample,
        and save the latest checkpoint (and the best, when the sample's loss improved)."""
        bad = first_nonfinite(self.model.named_parameters())
        if bad is not None:
            raise self._diverged(f"the weight {bad} became NaN or infinite")
        if self._stop == "interrupted":  # the user is waiting: save at once, validate in the next run
            self.save("latest")
            return
        metrics = {"step": self.step}
        if self.val_data is not None:
            metrics.update(self._validate(final))
            self._check_loss("validation", metrics["val_loss"])
        if self.task is not None:
            metrics.update(self.task.evaluate(self.model, self.vocab, self.device))
        sample = ""
        if (self.task is None or self.task.text) and self.world.writer:  # the sample is rank 0's to log
            request = Request("", Settings(length=self.config.sample_length, temperature=0.8))
            engine = BatchGenerator(self.model, self.vocab, self.device, precision="float32",
                                    threads=self.tuner.threads)  # a short sample: no tuning of its own
            sample = next(engine.run([request], seed=self.step)).text
        self._tick()  # the checkpoint's clock counts the validation
        # The best is judged on the fixed sample, the one figure every validation of the run measures;
        # without held-out text the newest model counts as the best, and best_val stays unknown (inf).
        judged = metrics.get("sample_loss", metrics.get("val_loss"))
        improved = judged is None or judged < self.best_val
        if judged is not None and improved:
            self.best_val = judged
        full = metrics.pop("full", None)  # of the event alone: a checkpoint's metrics are numbers
        self.last_metrics.update({k: v for k, v in metrics.items() if k != "sample_loss"})
        self.metrics.write("validation", sample=sample, **metrics, **({} if full is None else {"full": full}))
        self._hook("on_validation_end", step=self.step, metrics=metrics, sample=sample)
        self.save("latest")
        if improved:
            self.save("best")
        if self.config.keep_checkpoints:
            self.save(step_kind(self.step))
            self.directory.prune(self.config.keep_checkpoints)
        self.evals.done(self.elapsed)
        self.saves.done(self.elapsed)
        if self.task is not None and self._stop is None and self.task.solved(metrics):
            self._stop = "solved"

    def _validate(self, full: bool) -> dict:
        """Validation metrics: the fixed sample's when periodic, all the held-out text's when ``full``
        (with the sample's loss as ``sample_loss``, to judge the best on)."""
        data = self.val_data
        if self.val_windows is None:  # the first periodic validation fixes the sample, by time
            allowance = VAL_SHARE * self.evals.interval(self.elapsed, self.progress())
            windows, budget = data.windows, max(allowance, 0.25)
        else:
            windows, budget = (data.windows if full else self.val_windows), None
        self.phase, self.validation_fraction, self._final = "validating", 0.0, full
        self.metrics.write("validation_start", step=self.step, full=full, windows=windows)
        started = time.perf_counter()

        def progress(done: int) -> bool:
            self.validation_fraction = done / windows
            spent = budget is not None and not full and time.perf_counter() - started >= budget
            return self.world.any(spent)[0]  # every rank stops at the same window

        try:
            metrics, sample_loss, read = evaluate(self.model, data, len(self.vocab), self.device, windows,
                                                  self.val_windows, progress, self._val_sum)
        finally:
            self.phase, self.validation_fraction, self._final = "training", 0.0, False
        self._window_seconds = (time.perf_counter() - started) / read
        if self.val_windows is None:
            self.val_windows = read
        metrics["full"] = read == data.windows
        if full and sample_loss is not None:
            metrics["sample_loss"] = sample_loss
        return metrics

    def save(self, kind: str) -> Path:
        """Write checkpoint ``kind`` atomically; refuses (TrainingDiverged) to store NaN or inf. A process
        that does not own the run writes nothing."""
        path = self.directory.checkpoint(kind)
        carry = [tuple(self.world.gather_rows(s) for s in layer) for layer in self.state]  # every rank's streams
        if not self.directory.writer:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)  # a run resumed from a loose checkpoint file
        tensors, layout = training_state(self.model, self.optimizer, carry, self.device)
        bad = first_nonfinite(tensors.items())
        if bad is not None:
            raise self._diverged(f"{bad} became NaN or infinite")
        plugin_state: dict = {}
        self._hook("on_checkpoint_save", path=path, kind=kind, plugin_state=plugin_state)
        meta = {"config": self.config.to_dict(), "tokenizer": self.vocab.to_json(), **self.provenance, **layout,
                "step": self.step, "epoch": self.epoch, "window": self.window, "elapsed": self.elapsed,
                "best_val": self.best_val if math.isfinite(self.best_val) else None,
                "val_windows": self.val_windows, "metrics": self.last_metrics, "plugin_state": plugin_state,
                **({} if self.fingerprint is None else {"corpus": self.fingerprint})}
        save_checkpoint(path, tensors, meta)
        self.metrics.write("checkpoint", step=self.step, kind=kind, path=str(path))
        return path

    def _restore(self, ckpt: Checkpoint) -> None:
        meta = ckpt.meta  # validated by load_checkpoint; the restore_* helpers check the rest
        restore_model(ckpt, self.model)
        restore_optimizer(ckpt, self.optimizer, self.device)
        restore_rng(ckpt, self.device)
        carry = restore_carry(ckpt, self.model.initial_state(self.config.batch_size, self.device), self.device)
        self.state = [tuple(self.world.share(s) for s in layer) for layer in carry]  # this rank's streams
        self.step, self.epoch, self.window = meta["step"], meta.get("epoch", 0), meta.get("window", 0)
        if self.window > self.train_data.windows:
            raise CharforgeError(f"the corpus {self.config.corpus!r} is shorter than when this run started; "
                                 f"resume needs the same text.")
        self.elapsed = meta.get("elapsed", 0.0)
        self.best_val = meta["best_val"] if meta.get("best_val") is not None else math.inf
        self.val_windows = meta.get("val_windows")
        self.last_metrics = meta.get("metrics", {})
        self._hook("on_checkpoint_load", plugin_state=meta.get("plugin_state", {}))

    def _save_after(self, failed: PluginFailed) -> None:
        """Keep what was trained up to the step a plugin failed at; a save that fails in turn leaves the
        last checkpoint as it was, and the plugin's error is the one reported."""
        try:
            self.save("latest")
        except (CharforgeError, OSError) as exc:
            warn(f"after {failed.plugin!r} failed, the run could not be saved at step {self.step}: {exc}")

    def _interrupted(self) -> None:
        """First Ctrl-C or SIGTERM: stop after this step and save (the loop reads the flag at one point of
        each step, so that every rank of several stops at the same one); a second Ctrl-C: stop at once."""
        if self._signalled:
            raise KeyboardInterrupt
        self._signalled = True

    def _mean(self, loss_sum, steps: int) -> float:
        """The training loss of the last ``steps`` steps, over every rank's streams (their shares are equal)."""
        return float(self.world.sum(loss_sum)) / (steps * self.world.size)

    def _check_loss(self, which: str, loss: float) -> None:
        """A loss that counts as divergence (:func:`charforge.stopping.diverged`) ends training unsaved."""
        what = diverged(which, loss, len(self.vocab))
        if what is not None:
            raise self._diverged(what)

    def _diverged(self, what: str) -> TrainingDiverged:
        return TrainingDiverged(divergence_message(what, self.step, self.config, self.directory))

