"""Projections: order events (customers' spend; enrolment by first order or spend) and the
referral topic itself (the chain read model)."""
