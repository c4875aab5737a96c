def compute_accuracy(output, target, topk=(1,)):
    """Top-k accuracies in percent, as a list of 1-element tensors."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    batch_size = target.size(0)
    _, pred = output.topk(max(topk), 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [
        correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size)
        for k in topk
    ]
