"""The verifier's side: challenges, model oracles, decisions, audits, the registry."""
