"""Datasets and loaders of a training run: shuffled training shards and ordered held-out shards.

The training loader always uses ``DistributedSampler`` (one replica in a single process), so a run with
``W`` processes and global batch ``B`` sees, at every step, exactly the samples that a single process sees
with batch ``B`` (rank ``r`` takes positions ``r, r + W, ...`` of the same permutation). Held-out loaders
shard without padding (:class:`~imde.training.distributed.ShardSampler`), so all-reduced sums are exact.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from imde.training.config import DataConfig
from imde.training.distributed import DistInfo, ShardSampler


def build_dataset(data: DataConfig, split: str, *, train: bool) -> Dataset[dict[str, Any]]:
    """The dataset of ``split`` (``"train"`` or ``"test"``) with the training or evaluation transform.

    Raises:
        ValueError: the split is empty (naming the dataset, root and list file).
    """
    from imde.data import create
    from imde.data.transforms import create_transform

    transform = create_transform(data.transform, train=train, **data.transform_kwargs) if data.transform else None
    list_file = data.list_file if split == "train" else data.test_list_file
    split_name = data.train_split if split == "train" else data.test_split
    options = dict(data.options)
    if data.gt_root is not None:
        options["gt_root"] = data.gt_root
    dataset = create(data.name, data.root, split_name, list_file=list_file, transform=transform, **options)
    if data.subset is not None:
        dataset = Subset(dataset, range(min(data.subset, len(dataset))))  # type: ignore[arg-type]
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError(
            f"data: the {split} split of dataset {data.name!r} (root={data.root!r}, list_file={list_file!r}) is empty"
        )
    return dataset


def train_loader(dataset: Dataset[dict[str, Any]], data: DataConfig, info: DistInfo, seed: int) -> DataLoader:
    """Shuffled training loader; call ``loader.sampler.set_epoch(epoch)`` before each epoch.

    Raises:
        ValueError: ``batch_size`` not divisible by the number of processes.
    """
    if data.batch_size % info.world_size:
        raise ValueError(
            f"data.batch_size={data.batch_size}: the global batch must be divisible by the {info.world_size} processes"
        )
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed)
    return DataLoader(
        dataset,
        batch_size=data.batch_size // info.world_size,
        sampler=sampler,
        num_workers=data.num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        persistent_workers=False,
    )


def eval_loader(dataset: Dataset[dict[str, Any]], data: DataConfig, info: DistInfo) -> DataLoader:
    """Ordered held-out loader; each process gets its own non-overlapping shard.

    The loader has its own random generator: starting an iteration draws a seed from it rather than from the
    global one, so evaluating or dissecting between epochs leaves the training run's random stream (shuffling,
    augmentation) exactly as it would be without them.
    """
    sampler = ShardSampler(len(dataset), info.rank, info.world_size)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=data.eval_batch_size,
        sampler=sampler,
        num_workers=data.num_workers,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator(),
    )
