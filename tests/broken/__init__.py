"""Deliberately broken backends: each carries one bug a real store might have, and the kit's
own tests require the conformance suite to fail it and name the violated requirement."""
