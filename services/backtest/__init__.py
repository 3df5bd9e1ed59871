"""The backtester: the live mesh's own cores, in one process, on recorded or synthetic data.

    python -m services.backtest --data btcusdt_20240808.gz btcusdt_20240809.gz
    python -m services.backtest --log run/log
    python -m services.backtest --synthetic 100000 --seed 7 [--fill-model touch] [--json]
    python -m services.backtest --synthetic seed          # the seed's 13,334-event dataset
    python -m services.backtest --synthetic 50000 --sweep gamma_ppm=50000,100000 --sweep toxic_bps=6000,8000

A tool, not a supervised service: no sockets, no config of its own beyond
mesh.toml (`--config`, `--set section.key=value`).

Modules: `engine` (the in-process sequencer and loop), `inputs` (captures,
event logs, the synthetic market, the seed dataset), `seeddata` (the seed's
dataset from its formula), `report` (statistics, text/JSON/CSV/plot),
`sweep` (parameter grids over a process pool), `run` (one run end to end),
`cli` (the command line).

Assumptions -- what a result from this tool does and does not mean:

* Same decisions as live. Strategy, risk, router and execution are the
  mesh's cores (services.verifier.core.build_cores), fed by an in-process
  sequencer that stamps and delivers events exactly as the live sequencer
  does. Strategy kernels read event_ns; every time rule in risk, router and
  execution reads recv_ns, which here is the data's own time (monotone).
* Zero compute latency: a core's outputs are sequenced immediately after the
  event that caused them, before the next market event (as the live
  sequencer's drain priority does for orders). The only delays are the
  configured ones: execution.order_latency_ms (order and cancel to the
  venue) and execution.feed_latency_ms (market data to the venue), both on
  event time inside SimExchange.
* A Clock event every sequencer.clock_interval_ms of data time; no
  heartbeats, so risk's dead man's switch is off in backtests. Every other
  risk limit of the config applies -- including the circuit breaker, which
  can stop a run's trading early (it shows as RiskRejected "circuit_breaker").
* Venues are the router's simulated venues (router.venues: price offset,
  size share, taker fee each) with execution.maker_fee_bps for maker fills.
  Our orders never enter the book the data describes: no market impact, no
  self-trade, and nothing the data did would have reacted to us.
* Fill models. `queue` (default, conservative): a resting order joins the
  back of its price level (queue ahead = the level's displayed size) and
  fills only from printed trade volume beyond the queue ahead; a book that
  crosses it without a print does not fill it; the queue only moves forward
  when the data forces it. `touch` (optimistic, the seed's): it fills in
  full at its limit the moment the opposite best touches it, or a print
  reaches its price. Taker fills walk the venue's copy of the book.
* Money is exact: prices/qty/fees/PnL are integers end to end; the report
  prints them as exact decimals. The only float is the report's Sharpe per
  round trip (and the seed dataset's formula for its mid, truncated to an
  integer before anything sees it).
* The seed dataset (seeddata.py) is two sines plus bounded noise; see
  seeddata.WHY_DIFFERENT for why our numbers differ from its published ones.
"""
