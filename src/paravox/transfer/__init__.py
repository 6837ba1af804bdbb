"""Transfer: adapting a pretrained bundle to a task - fine-tuning (all at once or staged),
the adapter and two-step fine-tuning. Everything here trains; scoring is
:mod:`paravox.evaluation`."""
