"""Learning policies: Beta-Bernoulli Thompson sampling, linear Thompson sampling and LinUCB.

All three follow the one protocol of :mod:`legato.decide.policy`: parameters in a Pydantic
``Params`` model given to the constructor, ``decide`` on a whole batch of customers,
``update`` from a batch of outcomes, and ``state()``/``from_state()`` that round-trip
through JSON so that a restarted agent continues exactly where it was (same state and same
random generator give the same decisions).

Batched Thompson sampling and exact propensities
------------------------------------------------
Textbook Thompson sampling draws one posterior sample per customer: for a million customers
and 24 actions that is a million 24-action draws (for LinTS, a million multivariate
Gaussians), far too slow. The standard batched approximation draws the parameters once per
chunk of customers and scores the whole chunk with one matrix product ``X @ Θ``. We draw a
small *ensemble* of ``propensity_samples`` posterior samples per chunk, and each customer
follows one member picked uniformly at random:

- marginally, each customer's action is distributed exactly as under Thompson sampling
  (a uniformly picked draw from the posterior is itself a draw from the posterior); what the
  batching costs is that customers of one chunk are correlated through the shared ensemble;
- given the ensemble, the probability of the chosen action is the share of members whose
  argmax it is. That is the Monte Carlo estimate of "the probability that this action wins
  the argmax under the posterior" and, at the same time, the *exact* probability with which
  this decision was randomized, which is what inverse-propensity off-policy evaluation
  needs (a Monte Carlo estimate computed from separate draws could be 0 for the action that
  was actually chosen, and IPS would divide by it).

Masks (``allowed``, see :mod:`legato.decide.policy`) are applied inside each member: a
member's choice for a customer is its argmax over that customer's allowed actions, so the
propensity is still the exact share of members that chose the action, now under the mask.
LinUCB takes its argmax (and breaks ties, and explores with ε) among the allowed actions only.

Speed
-----
LinTS and LinUCB decide for a million customers × 24 actions in a fraction of a second
(``legato bench throughput``): scores are float32 GEMMs in an action-major layout, reduced
over the actions with whole-row vectorized passes, in cache-sized blocks, with chunks on
parallel threads; every random draw stays on the calling thread in chunk order. The
decisions and propensities are those of the plain sequential computation; see
:mod:`legato.decide.policies.scoring` and the two classes' docstrings.

Modules
-------
``common`` (parameter rules, input and state checks, the ensemble choice), ``scoring`` (the
speed path), ``beta`` (:class:`BetaThompson`), ``ridge`` (the ridge posteriors and their
state), ``linear`` (what LinTS and LinUCB share), ``lin_ts`` and ``lin_ucb``. Import the
policies from this package; the modules are its inside.

Rewards, propensities and learning
----------------------------------
``update`` accepts the logged propensities because the protocol carries them for every
policy; these three learners do not weight by them: a Bayesian posterior (Beta or ridge
regression) stays valid when the data were collected adaptively, so they learn from their
own logs and from any other policy's logs alike.
"""

from __future__ import annotations

from typing import Any

from legato.decide.policies.beta import BetaThompson
from legato.decide.policies.common import STATE_VERSION
from legato.decide.policies.lin_ts import LinTS
from legato.decide.policies.lin_ucb import LinUCB

LEARNING_POLICIES: dict[str, Any] = {policy.name: policy for policy in (BetaThompson, LinTS, LinUCB)}

__all__ = ["LEARNING_POLICIES", "STATE_VERSION", "BetaThompson", "LinTS", "LinUCB"]
