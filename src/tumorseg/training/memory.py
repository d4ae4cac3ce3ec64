"""The memory of a 3D U-Net training job, counted from its settings (the rule's
``mem_mb``)."""

#: memory of a TensorFlow training process before any tensor (interpreter, libraries)
BASE_MB = 1200


def estimate_mem_mb(settings: dict, n_channels: int, n_classes: int) -> int:
    """Peak memory (MB) of a 3D U-Net training job, counted from the patch and batch size
    without building the model: per level, the activations kept for the backward pass
    (two convolutions, their batch norms and ReLUs, the skip and the up-convolution: about
    8 float32 tensors of the level's size), twice over for their gradients, plus the
    weights with Adam's two moments, the input and one-hot label batches, and
    :data:`BASE_MB`."""
    x, y, z = (int(v) for v in settings["patch_size"])
    batch = int(settings["batch_size"])
    base, depth = int(settings["base_filters"]), int(settings["depth"])
    voxels = x * y * z
    activations = 0
    weights = 0
    k3 = int(settings["kernel_size"]) ** 3
    c_in = n_channels
    for level in range(depth + 1):
        filters = base * 2**level
        activations += 8 * filters * voxels / 8**level
        weights += k3 * (c_in + filters) * filters * (2 if level < depth else 1)
        c_in = filters
    tensors = batch * (2 * activations + voxels * (n_channels + n_classes))
    total = 4 * (tensors + 4 * weights)
    return int(BASE_MB + total / 2**20)
