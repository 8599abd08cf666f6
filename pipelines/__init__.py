"""zeroclick clinical pipelines (cardiac MRI, histology), PACS integration, cohorts and the CLI."""

import logging

logging.getLogger("zeroclick").addHandler(logging.NullHandler())
