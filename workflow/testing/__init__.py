"""Test doubles that ship with tnt so benchmarks and users' own tests can use them; none of it is product code
and the product never imports it.

- `workflow.testing.scripted`: deterministic `scripted/<name>` models behind the production gateway (importing
  this package registers them);
- `workflow.testing.testserver`: a loopback OpenAI-compatible HTTP server with strict profiles and faults
  (`python -m workflow.testing.testserver`).
"""

from workflow.testing import scripted as scripted  # registers the scripted/ transport
