"""The service layer: the long-running daemon (wiring, runner, watcher, scheduler,
supervisor, log retention) that puts the lower layers to work for one vault."""
