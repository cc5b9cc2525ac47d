"""A few seeds of the simulator with faults at every boundary on a small scenario: each one must
keep every invariant (a failure names its seed, to replay with ``kassa simulate --seed``)."""

from __future__ import annotations

import pytest

from kassa_local.simulator import SimOptions, Simulation


@pytest.mark.parametrize("seed", [11, 29, 64])
def test_a_seed_with_faults_keeps_every_invariant(seed: int) -> None:
    report = Simulation(
        SimOptions(subscriptions=24, months=3, seed=seed, decline_rate=0.15, faults=True, fault_scale=4)
    ).run()
    assert report["ok"], f"seed {seed}: {report['violations']}"
    assert report["renewals"] > 0 and sum(report["faults_injected"].values()) > 50  # faults did fire
    assert report["double_charges"] == report["lost_invoices"] == report["duplicate_invoices"] == 0
    assert report["number_gaps"] == report["unmatched_paid_invoices"] == 0 and report["ledger_balanced"]
    assert report["charges_succeeded"] == report["invoices_paid"]
