"""Reports: the report's content (``content``), its sections built once (``sections``) and
written twice (``markdown``, ``html``), plots, the equation walkthrough, the environment
fingerprint, and the atomic folder writer."""
