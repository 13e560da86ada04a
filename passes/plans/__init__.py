"""The pure halves of the MLP passes: numpy linear algebra that chooses units, ranks, bases and masks
(testable without ONNX), and the budget search for fidelity floors."""
