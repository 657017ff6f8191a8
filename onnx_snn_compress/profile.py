"""Constants of the SNN-ONNX profile (the public contract; see docs/profile.md).

Shared by the profile's backend (writer) and frontend (reader) so the two can
never drift apart.
"""

PROFILE_VERSION = "1"
DOMAIN = "snn"
DOMAIN_VERSION = 1
OPSET = 19  # Equal on strings (used to decode the `reset` attribute) needs opset 19
IR_VERSION = 9  # the IR version that introduced opset 19
PRODUCER = "onnx-snn-compress"

# metadata_props keys owned by the profile
KEY_PROFILE = "snn.profile_version"
KEY_OUTPUT = "snn.output"  # "rate" | "spikes" | "leaky"
RESERVED_KEYS = (KEY_PROFILE, KEY_OUTPUT)
# optional keys: how the input the model was trained or compressed with was made
KEY_TIME_STEPS = "snn.input.time_steps"  # T, as a decimal string
KEY_ENCODING = "snn.input.encoding"  # "direct" | "poisson" | "temporal" (data with their own T)

# Neuron functions and their attributes, in declaration order
LIF = "LIF"
IF = "IF"
LIF_PER_NEURON = "LIFPerNeuron"  # LIF whose NEURON_PER_NEURON_ATTRS are tensors (per-neuron values)
LI = "LI"
MASKED_WEIGHT = "MaskedWeight"  # compact storage of a pruned weight tensor
NEURON_FLOAT_ATTRS = ("beta", "v_threshold", "v_reset", "v_leak", "v_init", "gain", "alpha")
NEURON_PER_NEURON_ATTRS = ("beta", "v_threshold", "v_reset", "v_leak", "v_init", "gain")
NEURON_INT_ATTRS = ("reset_delay", "fire_on_equal", "detach_reset")
NEURON_STRING_ATTRS = ("reset", "surrogate")
IF_OMITTED_ATTRS = ("beta", "v_leak")  # IF is LIF with beta = 1; v_leak then has no effect
# Current-based LIF (ir.SynapticNeuron): X -> S, and with recurrent synapses (X, W, B) -> S
CUBALIF = "CubaLIF"
RECURRENT_CUBALIF = "RecurrentCubaLIF"
SYNAPTIC_FLOAT_ATTRS = ("current_decay", *NEURON_FLOAT_ATTRS)
# ... whose SYNAPTIC_PER_NEURON_ATTRS are tensors (per-neuron values)
CUBALIF_PER_NEURON = "CubaLIFPerNeuron"
RECURRENT_CUBALIF_PER_NEURON = "RecurrentCubaLIFPerNeuron"
SYNAPTIC_PER_NEURON_ATTRS = ("current_decay", *NEURON_PER_NEURON_ATTRS)

# Graph-level helper tensor: the dynamic number of time steps, Shape(input)[0:1]
TIME_STEPS = "snn.time_steps"

# How weight tensors are stored: plain initializers, or pruned ones as a packed
# bitmask + nonzero values rebuilt in the graph (docs/profile.md, "Compact storage")
STORAGES = ("dense", "compact")
