"""GRASP group affines: where they sit in a graph (`sites`), how groups map to channels and fold into the
graph's constants (`affines`), and the tuning graph that takes them as inputs (`tuning`)."""
