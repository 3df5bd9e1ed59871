"""The feed handler: synthetic, replayed or live Binance market data -> normalized events.

Modules: `binance` (pure parsing + the diff-depth sync), `synthetic`, `replay`,
`live` (websocket + REST), `sources` (one shape for all three), `service`
(CLI, dry run, the producer loop).
"""
