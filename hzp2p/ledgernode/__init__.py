"""The sans-IO ledger node: the decisions of a ledger node as pure code (events in, actions out).

It sits above the contract engine and below the Trio shell (hzp2p.node) and the
simulator (hzp2p.sim), which both run it:

* `receipts`: the `Verdict` enum, the `Receipt` type and `Refused`, shared by every
  interface (admin socket, gateway, simulator): no outcome is recognised by string;
* `tracker`: the submit tracker, one explicit state per submitted transaction
  (received -> checked -> queued | forwarded -> proposed -> landed | refused | expired);
* `pipeline`: the leader's block-pipeline policy (when to build, on which head, what is
  in flight, what a refused block or a lost leadership drops);
* `apply`: what applying a committed block means (reuse of the leader's speculative
  execution, a refused block's placeholder result, the receipts a block gives);
* `node`: `LedgerNode`, the whole node (submit, admission, forwarding, block building,
  apply, receipts) over any state reader, as the simulator drives it.

Nothing here touches trio, sockets, sqlite, clocks or global random: time comes in as
arguments, I/O leaves as returned actions.
"""
