"""Data shared by the tests (a module with a unique name: `conftest` is not importable by name,
since tests/evaluation has a conftest of its own)."""

SENTENCES = [
    "The cat sat on the mat and looked at the garden.",
    "Economists study inflation, interest rates and unemployment.",
    "A quick brown fox jumps over the lazy dog near the river.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The orchestra played a symphony by Beethoven in the concert hall.",
    "Volcanoes erupt when magma rises through cracks in the crust.",
    "Football players trained on the field before the championship match.",
    "The library holds thousands of books about history and science.",
    "Rain fell on the city while people hurried home from work.",
    "Computers process data using binary numbers and logic gates.",
]
