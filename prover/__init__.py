"""The prover's (owner's) side: answering challenges, the leakage ledger."""
