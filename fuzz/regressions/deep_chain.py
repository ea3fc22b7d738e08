"""Writes a chain x -> OP -> OP -> ... -> y of N nodes (default Relu).

usage: python3 deep_chain.py N [OP] OUT.onnx
A chain of ~60 000 nodes (1.2 MB) overflows align's stack in Model::check
(petgraph::algo::tarjan_scc recurses once per node on the path).
"""
import sys
import onnx
from onnx import TensorProto as TP, helper as h
N=int(sys.argv[1]); op=sys.argv[2] if len(sys.argv)>3 else 'Relu'; out=sys.argv[-1]
def nm(i):
    s=''; i+=1
    while i: s+= '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'[i%62]; i//=62
    return '_'+s
nodes=[h.make_node(op,['x' if i==0 else nm(i-1)],[nm(i)]) for i in range(N)]
g=h.make_graph(nodes,'c',[h.make_tensor_value_info('x',TP.FLOAT,[1])],[h.make_tensor_value_info(nm(N-1),TP.FLOAT,[1])])
m=h.make_model(g,opset_imports=[h.make_opsetid('',13)]); m.ir_version=8
open(out,'wb').write(m.SerializeToString())
