"""One run's setup: the run spec, everything the run needs (data, network, first weights, the
batch schedule), and the engines that take part."""
