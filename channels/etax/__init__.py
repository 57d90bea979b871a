"""The e-tax bureau's 全量发票查询 export (docs/etax-export.md), in three parts: `container` guards
the zip (sizes, bombs, CRCs, far cells, sheet names), `parser` reads the two sheets into staged
rows, and `cells` reads each cell (money, numbers, rates, dates, text), rules 乐企 and RPA share."""
