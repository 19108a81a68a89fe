"""Training stage: validate → data → model → pretrained weights → fit/test → results.json."""

from medtransfer.train import resolvers  # noqa: F401  (registers ${mt.*} before Hydra composes)
